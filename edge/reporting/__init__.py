"""Where results go beyond the device: summaries (never media) over MQTT with an on-disk outbox.

`edge.reporting.mqtt` holds the publisher every application shares (the nightly job, the kiosk's
`kiosk.report`) and the topics and payload schemas the care team's `edge fleet` consumes; the
applications reach it through edge's public names (`Outbox`, `publish_outbox`, `schema_path`, ...).
"""
