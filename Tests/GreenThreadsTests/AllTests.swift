// The root of every suite. Tests run one at a time: each starts a kernel in
// a child process, and several of them measure scheduling (fairness,
// latency, preemption counts), which other tests running beside them on a
// 2-core machine would distort.
import Testing

@Suite(.serialized) struct GreenThreadsTests {}
