"""What every layer shares: the error tree, the values that flow between stages, the item table, storage
paths (local or object storage) and the process's signal handling. Imports nothing else of prep."""
