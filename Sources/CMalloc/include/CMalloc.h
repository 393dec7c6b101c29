#ifndef CMALLOC_H
#define CMALLOC_H
/* glibc's malloc_trim(3) and mallopt(3), which Swift's Glibc module does not
 * export: the agent returns the heap an apply freed and keeps large buffers in
 * their own mappings (Agent.returnFreedMemory, Agent.tuneAllocator). */
#include <malloc.h>
#endif
