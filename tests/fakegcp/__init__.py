"""In-process gRPC servers speaking Google's own service definitions.

Cloud Run, Cloud Monitoring, Cloud Build, Artifact Registry and Secret Manager have no
emulator. Their client packages ship the request and response types of each gRPC method
(proto-plus classes such as ``run_v2.GetServiceRequest``), so a server built from them is
checked by the real protobuf types: a wrong field name, a wrong method path or an undecodable
answer fails the way it would against Google. The official client is pointed at the server
through its gRPC transport (``ServicesGrpcTransport(channel=grpc.insecure_channel(address))``),
nothing else is replaced.

    server = FakeGrpc()
    server.unary("google.cloud.run.v2.Services", "GetService",
                 run_v2.GetServiceRequest, run_v2.Service, handler)
    with server:                     # starts on 127.0.0.1:<free port>
        client = run_v2.ServicesClient(transport=ServicesGrpcTransport(channel=server.channel()))

Handlers take ``(request, context)``; ``context.abort(grpc.StatusCode.NOT_FOUND, "...")``
answers an error with a real status code. Every call is recorded in :attr:`FakeGrpc.calls`.

Stateful fakes of whole services (Cloud Run, Artifact Registry, Cloud Build with its
long-running operations, Secret Manager) built on it are in ``_cloud.py``.
"""

from ._cloud import FakeArtifactRegistry, FakeCloudBuild, FakeCloudRun, FakeSecretManager
from ._server import Call, FakeGrpc, done_operation

__all__ = [
    "Call",
    "FakeArtifactRegistry",
    "FakeCloudBuild",
    "FakeCloudRun",
    "FakeGrpc",
    "FakeSecretManager",
    "done_operation",
]
