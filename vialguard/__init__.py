"""vialguard core: what more than one service needs.

Recipe and patching, the one SSIM, heatmaps, decision rules, calibration files,
model versions, inter-service messages and the strip simulator. Services
(preprocessor, aggregator, trainer) are thin shells around this package.
"""
