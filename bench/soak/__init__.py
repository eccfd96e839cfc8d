"""Soak with injected faults and the security issue's attacks replayed under load.

``bench/soak/run.py`` starts its own services (:mod:`.services`), drives clients
(:mod:`.clients`), injects faults (:mod:`.faults`) or attacks (:mod:`.attacks`), samples
the server (:mod:`.sampler`) and writes a JSON summary and a PNG (:mod:`.report`).
"""
