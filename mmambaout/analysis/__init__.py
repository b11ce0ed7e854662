"""Measurements behind "Testing the long-sequence hypothesis" (tools/analysis/).

One concept per module: ``long_sequence`` (token counts against the paper's 6·D threshold),
``mixing_flops`` (backbone FLOPs split into token and channel mixing), ``vit_reference`` (the
quadratic reference), ``measure`` (latency and peak memory), ``scaling`` (fitted exponents),
``models`` (building configs' models and their inputs for measurement), ``paper_results``
(the paper's published numbers), ``work_dirs`` (metrics of finished runs), ``report`` (Markdown
tables and CSV files), ``receptive_field`` (how far a network without a global path sees),
``erf`` (effective receptive fields: where a network's weights actually look), ``longrange``
(the long-range study: accuracy against distance, controls and decision rule).
"""
