"""Files: audio in any format, mel and F0 ``.npy`` files, checkpoints and slim exports, atomic writes."""
