"""The fronts: thin translations from a wire protocol onto the one runtime, each with its own error table.

forgetd.v1 (gRPC): v1.py holds the servicers, convert.py turns its messages into the runtime's terms and
back, status.py is the table of status codes every gRPC handler answers errors with. The Open Inference
Protocol front lives in the oip_*.py modules beside them. records.py is what both take instead of encoded
features: raw records, encoded by the store's feature encoder.
"""
