"""Triton kernels of hybrid_fast (shipped as ``hybrid_fast.triton``).

``infonce``: fused InfoNCE forward/backward; ``topk``: fused inner-product top-k. Importing this
package imports triton; ``hybrid_fast.ops.triton_backend`` imports it lazily, on first use.
Set ``TRITON_INTERPRET=1`` before the first import to run the kernels on CPU tensors.
"""
