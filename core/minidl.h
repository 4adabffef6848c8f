// minidl: everything a program needs, in one include: #include <minidl/minidl.h>
#pragma once

#include "autograd/engine.h"
#include "autograd/grad_mode.h"
#include "autograd/gradcheck.h"
#include "compiler/compile.h"
#include "compiler/attention/attention.h"
#include "core/allocator.h"
#include "core/config.h"
#include "core/error.h"
#include "core/log.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"
#include "runtime/cuda.h"
