"""What several ops share: input checks (:mod:`.validation`), the backend registry
(:mod:`.registry`), the packed (score, id) key format (:mod:`.keys`) and the shared Triton
helpers (:mod:`.triton_helpers`, imported only by Triton kernel modules).

A leaf: these modules import only torch and triton, never another part of hybrid_fast, so every
op package, kernel and backend may import them without creating a cycle.
"""
