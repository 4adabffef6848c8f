# Fails when a binary records the CUDA driver library (libcuda) as a dependency: minidl links
# the runtime, cuBLAS and NVRTC only, so the same binary starts on a machine without a driver.
#   cmake -DREADELF=... -DBINARY=... -P check_no_driver.cmake   (also include()d by install_test)
function(check_no_driver readelf binary)
  execute_process(COMMAND ${readelf} -d ${binary} OUTPUT_VARIABLE dyn RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "check_no_driver: '${readelf} -d ${binary}' failed (${rc})")
  endif()
  if(dyn MATCHES "NEEDED[^\n]*libcuda\\.so")
    message(FATAL_ERROR "check_no_driver: ${binary} depends on the CUDA driver library:\n${dyn}")
  endif()
endfunction()

if(CMAKE_SCRIPT_MODE_FILE STREQUAL CMAKE_CURRENT_LIST_FILE)
  check_no_driver(${READELF} ${BINARY})
endif()
