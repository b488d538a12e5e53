"""Tasks that use the fusion core.

Every task trains with the shared loop of :mod:`brainenc.tasks.training`
(checkpoints and metric logs in :mod:`brainenc.tasks.checkpoint`).
"""
