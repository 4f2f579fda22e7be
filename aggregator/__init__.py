"""The aggregator: a Redis Streams consumer group that turns scores into verdicts.

It applies the thresholds of the model version that produced the scores (never
"the latest"), the strip rule (eq. 13) and the k-of-n run policy, writes every
verdict to an append-only, hash-chained audit store outside Redis, then
publishes it (verdicts stream, idempotency key, the waiting preprocessor's
reply list). Run it with ``python -m aggregator``.
"""
