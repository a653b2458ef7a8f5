// Stand-ins for the helpers that documentation examples call, so each
// example compiles on its own (Tools/snippets/check-snippets.py). They only
// need the right types; nothing runs.
import GreenThreads

struct ExampleError: Error {}

func compute() throws -> Int { 0 }
func process(_ value: Int) {}
func serveRequest() {}
func useSharedResource() {}
func repairSharedState() {}
func useSharedState() {}
func size(of path: String) throws -> Int { 0 }
func serve(_ client: GreenTCPStream) throws {}
