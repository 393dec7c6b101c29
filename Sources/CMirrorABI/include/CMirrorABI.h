// The datapath ABI (bpf/mirror_abi.h), imported by Swift as the module CMirrorABI.
// There is no second definition of these structs anywhere (shared/STYLE.md).
#include "../../../bpf/mirror_abi.h"
