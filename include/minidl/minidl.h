// minidl: everything a program needs, in one include: #include <minidl/minidl.h>
#pragma once

#include "autograd/engine.h"
#include "autograd/gradcheck.h"
#include "base/config.h"
#include "base/error.h"
#include "base/log.h"
#include "compiler/attention/attention.h"
#include "compiler/compile.h"
#include "core/allocator.h"
#include "core/grad_mode.h"
#include "core/ops.h"
#include "core/random.h"
#include "core/tensor.h"
#include "runtime/cuda.h"
