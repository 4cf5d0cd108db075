"""The streaming engine: frames and audio fused on the 100 ms clock (edge.stream.engine), faces
tracked between detections (edge.stream.faces); the models it advances live in edge.models."""
