"""Declared benchmarks (Liger's pattern): setup factory, providers, modes, sweep; one JSON row per
point with machine, threads, versions, git SHA and derived FLOP/s. Run as
``hybrid-fast bench <op>`` or ``python -m hybrid_fast.benchmarks.<op>``; benches/ holds the
pytest-benchmark entry points and the recorded results."""
