# Runs PROGRAM with ARGS (one string, split as a shell would) and passes when it exits with
# STATUS (default 0) and its output, stdout then stderr, matches REGEX and, unless NOT_REGEX is
# empty, does not match NOT_REGEX (CTest's PASS_REGULAR_EXPRESSION alone would ignore the exit
# status). Run by CTest:
#   cmake -DPROGRAM=path [-DARGS="--a b"] -DREGEX=... [-DNOT_REGEX=...] [-DSTATUS=1] -P run_and_match.cmake
if(NOT DEFINED STATUS)
  set(STATUS 0)
endif()
separate_arguments(args UNIX_COMMAND "${ARGS}")
execute_process(COMMAND ${PROGRAM} ${args} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc STREQUAL "${STATUS}")
  message(FATAL_ERROR "${PROGRAM} ${ARGS} exited with ${rc}, expected ${STATUS}")
endif()
if(NOT "${out}${err}" MATCHES "${REGEX}")
  message(FATAL_ERROR "the output of ${PROGRAM} ${ARGS} does not match '${REGEX}'")
endif()
if(NOT "${NOT_REGEX}" STREQUAL "" AND "${out}${err}" MATCHES "${NOT_REGEX}")
  message(FATAL_ERROR "the output of ${PROGRAM} ${ARGS} matches '${NOT_REGEX}'")
endif()
