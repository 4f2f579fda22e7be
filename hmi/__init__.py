"""The operator HMI: a read-only web screen over the stack's own interfaces.

It follows WatchVerdicts (resuming with after_id), fetches GetHeatmaps for rejects,
reads the model repository's published reports and the audit store (read-only).
It never writes to Redis or the audit store.
"""
