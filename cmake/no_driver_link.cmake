# minidl links the CUDA runtime, cuBLAS and NVRTC, never the driver library (libcuda), so one
# binary starts on a machine without a GPU or driver. FindCUDAToolkit makes CUDA::nvrtc pull
# in CUDA::cuda_driver (the stub libcuda.so); libnvrtc needs no driver, so drop that edge.
# Included by the build and by the installed minidlConfig.cmake, after find_package(CUDAToolkit).
if(TARGET CUDA::nvrtc)
  get_target_property(_minidl_nvrtc_deps CUDA::nvrtc INTERFACE_LINK_LIBRARIES)
  if(_minidl_nvrtc_deps)
    list(REMOVE_ITEM _minidl_nvrtc_deps CUDA::cuda_driver)
    set_target_properties(CUDA::nvrtc PROPERTIES INTERFACE_LINK_LIBRARIES "${_minidl_nvrtc_deps}")
  endif()
  unset(_minidl_nvrtc_deps)
endif()
