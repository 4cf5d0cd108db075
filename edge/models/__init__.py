"""The models, one home each: a wrapper per shipped model with its manifest contract.

- `edge.models.emotion`: the facial-emotion classifier (mini-Xception), EmotionClassifier;
- `edge.models.severity`: the streaming PHQ-8 estimator (LSTM-MoE), SeverityModel / SeverityStream;
- `edge.models.blazeface`: the BlazeFace face detector; `edge.models.haar`: OpenCV's Haar
  cascade; `edge.models.detectors`: one of the two by name.

The shipped files sit next to this code, one folder per model (`<name>/manifest.json` and
the model files; see README.md). A wrapper is given the file to open (a manifest entry):
which file a device loads (`precision: fp32 | int8 | auto`) is chosen by the loaders
above them (edge.precision.load_emotion / load_severity), never here.
They import only lower layers: edge.backends, edge.manifest, edge.features, edge.rules,
edge.errors, edge.cpu. Nothing is imported here: `import edge.models.haar` stays light.
"""
