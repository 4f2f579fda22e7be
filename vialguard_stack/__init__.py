"""Running the vialguard stack: the line cluster (docker-compose.yml) and one machine.

`demo` is the README's "run" command: a real redis-server, a real tritonserver, the
preprocessor and the aggregator as child processes (`supervisor`), and a simulated
camera (`camera`) that pushes a Knapp-style kit through gRPC. `probes` holds the
readiness checks shared by the supervisor and the Docker health checks, so a
container is "healthy" under exactly the rule the local stack waits for.

Kept free of imports here: the service images copy only `probes.py` from this
package, next to this file.
"""
