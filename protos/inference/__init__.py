"""Generated stubs for the Open Inference Protocol v2 as Triton serves it: package `inference`, service
`inference.GRPCInferenceService` (`make stubs` regenerates them from the vendored .proto files here; what
was vendored and from where is in LICENSE-NOTE.md).

The messages live in POOL, not in protobuf's default descriptor pool: tritonclient, kserve and mlserver
register the same `inference.*` names there under their own file names and versions, and protobuf refuses
a second definition of a name, so sharing the default pool would make forgetd.oip and a client library
unimportable in one process. The wire format does not depend on the pool.
"""

from google.protobuf import descriptor_pool

POOL = descriptor_pool.DescriptorPool()
