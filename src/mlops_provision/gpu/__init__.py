"""GPU layer support: hardware and NVML facts (``facts``), input rules (``rules``), the ``facts`` verb (``collect``)."""
