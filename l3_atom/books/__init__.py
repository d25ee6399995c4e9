"""Order books from the normalised book topics: the pure engine, sequence integrity, exchange checksums.

Pure code: nothing here imports above ``l3_atom.books``; the Faust agent that keeps books in the
processor is ``l3_atom/stream_processing/book_agent.py``.
"""
