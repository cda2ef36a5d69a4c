// src/base/process_heap.cc
// The malloc settings of process_heap.h, through glibc's mallopt.
#include "base/process_heap.h"

#include <malloc.h>

namespace credit {

bool tune_process_heap() {
  bool ok = mallopt(M_MMAP_THRESHOLD, static_cast<int>(kMmapThresholdBytes)) == 1;
  ok = mallopt(M_TRIM_THRESHOLD, static_cast<int>(kHeapTrimThresholdBytes)) == 1 && ok;
  return ok;
}

BulkHeapGrowth::BulkHeapGrowth() {
  (void)mallopt(M_TOP_PAD, static_cast<int>(kHeapTopPadBulkBytes));
}

BulkHeapGrowth::~BulkHeapGrowth() {
  (void)mallopt(M_TOP_PAD, static_cast<int>(kHeapTopPadDefaultBytes));
}

}  // namespace credit
