"""Polyforge's corpus-building library: one module per stage, streaming, typed.

pipeline/ never imports model/.
"""
