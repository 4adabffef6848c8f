// minidl::optim in one include: optimizers, gradient clipping and schedules.
#pragma once

#include "optim/optimizer.h"
#include "optim/schedule.h"
