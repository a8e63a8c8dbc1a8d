"""HTTP front doors: tus 1.0 at /files/, the seeds' JSON API under /api/, health."""
