"""Preprocessing shared by the device and the training host (one source of truth)."""
