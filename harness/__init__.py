
import os

# The harness forks server and worker processes while gRPC threads (the etcd clients) run; gRPC's fork
# handlers then only log noise, since every child execs at once. The harness's own concern, so it is set
# here, before any harness module imports grpc, and not by the backends; a user's setting wins.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")
