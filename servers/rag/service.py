"""The RagService servicer: translates messages and calls a use case, nothing else."""

from intelgraph.rag.v1 import rag_service_pb2, rag_service_pb2_grpc

from servers.runtime import PlatformServicer, ServiceDefinition


class RagService(PlatformServicer, rag_service_pb2_grpc.RagServiceServicer):
    """Resumable ingest, chunk lineage, extractive summaries, purpose templates, proof manifests.

    No RPC is built yet; each answers UNIMPLEMENTED naming its capability.
    """


SERVICE = ServiceDefinition(
    name="rag",
    descriptor=rag_service_pb2.DESCRIPTOR.services_by_name["RagService"],
    servicer_class=RagService,
    add_to_server=rag_service_pb2_grpc.add_RagServiceServicer_to_server,
    capability="RAG-safe connectors (not scheduled yet)",
)
