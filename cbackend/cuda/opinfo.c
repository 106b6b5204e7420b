/* The op table's facts the CUDA runtime needs, read from the C table (mfe_ops.h's MFE_OP_INFO is C only). */
#include "internal.h"

int mfe_cu_blob_item(int32_t op, int32_t j) {
    if (op <= 0 || op >= MFE_OP_COUNT || !MFE_OP_INFO[op].name || j < 0 || j >= MFE_OP_INFO[op].n_blobs) return 0;
    return MFE_OP_INFO[op].blobs[j].dtype == MFE_DT_INT8 ? 1 : 4;
}

const char *mfe_cu_op_name(int32_t op) {
    return op > 0 && op < MFE_OP_COUNT && MFE_OP_INFO[op].name ? MFE_OP_INFO[op].name : "?";
}
