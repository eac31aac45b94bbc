# House warning set (see ../shared/STYLE.md "Build"). CI adds -Werror.
set(AIN_WARNINGS
    -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes
    -Wformat=2 -Wvla -Wpointer-arith -Wcast-qual -Wundef
    -Wno-unused-parameter)
if(AIN_WERROR)
    list(APPEND AIN_WARNINGS -Werror)
endif()
add_compile_options(${AIN_WARNINGS})
