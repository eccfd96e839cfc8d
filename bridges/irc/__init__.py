"""IRC <-> room relay (issue 4): one bot per side, a sans-IO IRC core in a trio shell."""
