"""cortexedge.train: readers and synthetic recordings, windowing, decoder models, the fit loop.

Importing this package stays torch-free; torch loads with the modules that need it.
"""
