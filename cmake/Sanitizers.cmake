# Sanitizer builds. The bundle runs actors as threads, so TSan matters as
# much as ASan; the two cannot be combined in one build.
if(AIN_ASAN AND AIN_TSAN)
    message(FATAL_ERROR "AIN_ASAN and AIN_TSAN are mutually exclusive")
endif()
if(AIN_ASAN)
    add_compile_options(-fsanitize=address,undefined -fno-sanitize-recover=undefined
                        -fno-omit-frame-pointer)
    add_link_options(-fsanitize=address,undefined)
    add_compile_definitions(AIN_SANITIZED=1)
endif()
if(AIN_TSAN)
    add_compile_options(-fsanitize=thread -fno-omit-frame-pointer)
    add_link_options(-fsanitize=thread)
    add_compile_definitions(AIN_SANITIZED=1 AIN_TSAN=1)
endif()
