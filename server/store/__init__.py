"""The on-disk model store: its layout and durable writes, the erasable row store, and the audit vault."""
