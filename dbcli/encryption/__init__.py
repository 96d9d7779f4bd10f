"""Field-level encryption of sensitive columns and document fields (AES-GCM, key ids, rotation)."""
