"""The bench harness: what the diagnosis benchmark and the GPU-machine scripts share.

One module per job:

    console     the timestamped progress line every step prints
    launch      a workload in its own session: READY, offsets after launch or READY, stop
    gpus        read-only nvidia-smi queries: GPU count, utilization while recording, idle waits
    record      `nodetune diagnose` / `nodetune snapshot` runs and the files they leave
    judge       expectations of the workloads, what a report said about a GPU, the goals
    tables      the plain-text tables the benchmarks print
    workloads   the diagnosis workloads: discovery, rounds, each one's command line
    rounds      one round of the diagnosis benchmark: launch, record, judge, stop
    results     the benchmark's printed summary and its results JSON
    diagnosis   the diagnosis benchmark: its options and its run over the rounds
    window      one workload, one recorded window at an offset (the device scripts' recordings)
    agents      node_exporter's binary, an agent's config, the exporters' NAME=PID:PORT
    cli         `python -m bench.harness {diagnosis,window,v2-table,node-exporter,agent-config}`

Standard library only (psutil where present), so it runs on a GPU machine before anything is
installed; nothing here imports nodetune.
"""
