// libunwind for local (in-process) unwinding only: we never unwind another
// process, and UNW_LOCAL_ONLY selects the cheap _ULx86_64_/_Uaarch64_ entry points.
#define UNW_LOCAL_ONLY
#include <libunwind.h>
