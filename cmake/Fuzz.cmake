# libFuzzer targets (AIN_FUZZ, clang only; tests/run.sh builds them in build-fuzz).
#
# ain_fuzz_target(<library> <target> <source>) builds <target> from the harness <source>
# linked to <library>, and instruments <library> too: coverage for the code under test, not
# only for the harness. Nothing happens without AIN_FUZZ.
function(ain_fuzz_target library target source)
    if(NOT AIN_FUZZ)
        return()
    endif()
    target_compile_options(${library} PRIVATE -fsanitize=fuzzer-no-link)
    add_executable(${target} ${source})
    target_compile_options(${target} PRIVATE -fsanitize=fuzzer)
    target_link_options(${target} PRIVATE -fsanitize=fuzzer)
    target_link_libraries(${target} PRIVATE ${library})
endfunction()
