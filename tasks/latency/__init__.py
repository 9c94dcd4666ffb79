"""Few-shot latency prediction on devices never seen before (see ``prior``, ``fewshot``, ``selection``).

    table = LatencyTable.load("nb201_hw.parquet")       # arch + latency_ms_<device> columns
    prior = pretrain(table, exclude="pixel2")             # known devices -> device basis + meta-learned prior
    rows = select_measurements(prior, table.genes, 20)    # what to measure on the new device
    model = adapt(prior, Measurements(genes, latency_ms)) # N measurements -> DeviceModel
    pred = model.predict(genes)                           # .latency_ms, .log_std, .lower, .upper
"""
