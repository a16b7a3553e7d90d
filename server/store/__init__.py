"""The on-disk model store: its layout and durable writes, the batch tag each version carries, the erasable
row store, and the audit vault."""
