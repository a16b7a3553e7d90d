"""The auditor behind `forgetd verify`: it replays the ledger from genesis and proves the store's state."""
