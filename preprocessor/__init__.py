"""preprocessor: the gRPC server the camera software calls (DESIGN section 2).

A thin shell over the core package: validates an acquisition, cuts its patches
with vialguard.patching, has the inspector model score them, queues the scores
for the aggregator on Redis and answers with the aggregator's verdict. It never
applies thresholds itself.
"""
