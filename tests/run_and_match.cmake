# Runs PROGRAM and passes when it exits with 0 and its output matches REGEX (CTest's
# PASS_REGULAR_EXPRESSION alone would ignore the exit status). Run by CTest:
#   cmake -DPROGRAM=path -DREGEX=... -P run_and_match.cmake
execute_process(COMMAND ${PROGRAM} OUTPUT_VARIABLE out ERROR_VARIABLE err RESULT_VARIABLE rc)
message("${out}${err}")
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "${PROGRAM} exited with ${rc}")
endif()
if(NOT out MATCHES "${REGEX}")
  message(FATAL_ERROR "the output of ${PROGRAM} does not match '${REGEX}'")
endif()
