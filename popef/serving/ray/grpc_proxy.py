"""What Ray's gRPC proxy needs: the service to register and picklable messages.

Ray Serve's proxies host a gRPC server whose services come from the functions named in
``gRPCOptions(grpc_servicer_functions=[...])``; each call goes, pickled, to the deployment
method named after the RPC. :func:`add_servicer` registers Triton's
``inference.GRPCInferenceService`` (the stubs ``tritonclient`` ships), so stock clients talk to
the proxy unchanged.

tritonclient's generated messages say they live in modules ``grpc_service_pb2`` and
``model_config_pb2``, which do not exist: pickle cannot find their classes. Importing this
module makes those names aliases of tritonclient's modules (in the proxy and in every replica,
which both import it).
"""

from __future__ import annotations

import sys

from tritonclient.grpc import model_config_pb2, service_pb2, service_pb2_grpc

__all__ = ["GRPC_SERVICER_FUNCTION", "UNARY_RPCS", "add_servicer"]

sys.modules.setdefault(service_pb2.ServerLiveRequest.__module__, service_pb2)
sys.modules.setdefault(model_config_pb2.ModelConfig.__module__, model_config_pb2)

#: the import path to give ``gRPCOptions.grpc_servicer_functions``
GRPC_SERVICER_FUNCTION = f"{__name__}.add_servicer"

#: the unary RPCs of ``inference.GRPCInferenceService`` the Ray application answers (the
#: bidirectional ``ModelStreamInfer`` is not carried by Ray's proxy)
UNARY_RPCS = (
    "ServerLive",
    "ServerReady",
    "ModelReady",
    "ServerMetadata",
    "ModelMetadata",
    "ModelInfer",
    "ModelConfig",
    "ModelStatistics",
    "RepositoryIndex",
    "RepositoryModelLoad",
    "RepositoryModelUnload",
    "SystemSharedMemoryStatus",
    "SystemSharedMemoryRegister",
    "SystemSharedMemoryUnregister",
    "CudaSharedMemoryStatus",
    "CudaSharedMemoryRegister",
    "CudaSharedMemoryUnregister",
    "TraceSetting",
    "LogSettings",
)


def add_servicer(servicer, server) -> None:
    """Register ``inference.GRPCInferenceService`` with Ray's proxy (``servicer`` is Ray's
    stand-in that forwards each RPC to the deployment)."""
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(servicer, server)
