// The number of CPUs this process may actually use: the affinity mask,
// capped by a cgroup CPU quota (a container limited to 1.5 CPUs on a
// 64-core host should run 2 workers, not 64).
import CGreenCore
import Glibc

enum UsableCPUs {
    static func count() -> Int {
        var byAffinity = Int(sysconf(Int32(_SC_NPROCESSORS_ONLN)))
        let affinity = Int(gt_affinity_cpu_count())
        if affinity > 0 { byAffinity = affinity }
        if let quota = cgroupQuota() { return max(1, min(byAffinity, quota)) }
        return max(1, byAffinity)
    }

    /// ceil(quota / period) from cgroup v2 cpu.max or v1 cfs files, if limited.
    static func cgroupQuota() -> Int? {
        let membership = readSmallFile("/proc/self/cgroup") ?? ""
        for line in membership.split(separator: "\n") {
            let parts = line.split(separator: ":", maxSplits: 2, omittingEmptySubsequences: false)
            guard parts.count == 3 else { continue }
            let path = String(parts[2])
            if parts[0] == "0" {  // cgroup v2
                if let text = readSmallFile("/sys/fs/cgroup\(path)/cpu.max") ?? readSmallFile("/sys/fs/cgroup/cpu.max") {
                    let fields = text.split(whereSeparator: { $0 == " " || $0 == "\n" })
                    if fields.count >= 2, let quota = Double(fields[0]), let period = Double(fields[1]), period > 0 {
                        return Int((quota / period).rounded(.up))
                    }
                }
            } else if parts[1].split(separator: ",").contains("cpu") {  // cgroup v1
                let dir = "/sys/fs/cgroup/cpu\(path)"
                if let q = readSmallFile("\(dir)/cpu.cfs_quota_us").flatMap({ Double($0.filter { !$0.isWhitespace }) }),
                   let p = readSmallFile("\(dir)/cpu.cfs_period_us").flatMap({ Double($0.filter { !$0.isWhitespace }) }),
                   q > 0, p > 0 {
                    return Int((q / p).rounded(.up))
                }
            }
        }
        return nil
    }
}
