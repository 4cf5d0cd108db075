"""Capture: video (camera, GStreamer, picamera2, file) and audio (microphone, WAV).

Each source runs in its own thread and hands its data to the stream engine through a
bounded queue, with timestamps from one monotonic clock (`edge.capture.clock`):
- video drops the OLDEST frame when the consumer is behind (counted), except a file
  read with `--fast`, where the reader simply waits (nothing is lost);
- audio is never dropped silently: an overflow is counted, reported, and replaced by
  a recorded gap of silence of the same length so the timeline stays aligned;
- a live camera or microphone that fails is reopened with back-off; the time it was
  away is recorded as a gap and the session goes on.
"""
