"""Analysis: mel conventions and their diagnosis, vocoder-collapse detection, distribution stats, reports."""
