# cmake -P script: cmake --install BUILD_DIR into WORK_DIR/prefix, then configure, build and run the
# consumer project against that prefix only. Prints "consumer: ok" on success.
foreach(var BUILD_DIR CONSUMER_SOURCE WORK_DIR CXX_COMPILER GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "install_and_consume.cmake: -D${var}=... is required")
  endif()
endforeach()
set(prefix ${WORK_DIR}/prefix)
set(build ${WORK_DIR}/build)
file(REMOVE_RECURSE ${WORK_DIR})

function(run step)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc OUTPUT_VARIABLE out ERROR_VARIABLE err)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "consumer: ${step} failed (${rc})\n${out}\n${err}")
  endif()
  set(step_output "${out}" PARENT_SCOPE)
endfunction()

set(config_args)
if(CONFIG)
  set(config_args --config ${CONFIG})
endif()
run("install" ${CMAKE_COMMAND} --install ${BUILD_DIR} --prefix ${prefix} ${config_args})
file(GLOB_RECURSE installed_config ${prefix}/*/ropekitConfig.cmake)
if(NOT installed_config)
  message(FATAL_ERROR "consumer: no ropekitConfig.cmake under ${prefix}")
endif()

set(build_type_arg)
if(CONFIG)
  set(build_type_arg -DCMAKE_BUILD_TYPE=${CONFIG})
endif()
run("configure" ${CMAKE_COMMAND} -S ${CONSUMER_SOURCE} -B ${build} -G ${GENERATOR}
    -DCMAKE_CXX_COMPILER=${CXX_COMPILER} ${build_type_arg}
    "-DCMAKE_CXX_FLAGS=${CXX_FLAGS}" "-DCMAKE_EXE_LINKER_FLAGS=${EXE_LINKER_FLAGS}"
    -DCMAKE_PREFIX_PATH=${prefix} -DROPEKIT_EXPECTED_PREFIX=${prefix}
    -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
run("build" ${CMAKE_COMMAND} --build ${build} ${config_args})

find_program(consumer_exe consumer PATHS ${build} ${build}/${CONFIG} NO_DEFAULT_PATH)
if(NOT consumer_exe)
  message(FATAL_ERROR "consumer: built program not found under ${build}")
endif()
run("run" ${consumer_exe})
message("${step_output}")
if(NOT step_output MATCHES "ok")
  message(FATAL_ERROR "consumer: the program did not report ok")
endif()
file(REMOVE_RECURSE ${WORK_DIR})
message("consumer: ok")
