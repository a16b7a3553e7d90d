"""The running daemon below its fronts: admission, the single unlearning worker, recovery, the ledger writer,
the ledger events, the witness quorum and the serving predictor. Start at `runtime.Runtime`."""
